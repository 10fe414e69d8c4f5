//! The JSON Schema of formula files, for TOML editors (taplo, Even Better
//! TOML): completion and validation while an analyst types.

/// The schema document (JSON Schema draft 7).
pub const JSON: &str = include_str!("schema.json");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::keys;

    fn props<'a>(v: &'a serde_json::Value, path: &[&str]) -> Vec<&'a str> {
        let mut v = v;
        for p in path {
            v = match p.parse::<usize>() {
                Ok(i) if v.is_array() => &v[i],
                _ => &v[*p],
            };
        }
        let mut out: Vec<&str> = v["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no properties at {path:?}"))
            .keys()
            .map(String::as_str)
            .collect();
        out.sort();
        out
    }

    fn sorted(k: &[&'static str]) -> Vec<&'static str> {
        let mut k = k.to_vec();
        k.sort();
        k
    }

    /// The schema names exactly the keys the parser accepts.
    #[test]
    fn schema_matches_the_parser() {
        let v: serde_json::Value = serde_json::from_str(JSON).unwrap();
        assert_eq!(props(&v, &[]), sorted(keys::TOP));
        assert_eq!(props(&v, &["properties", "formula"]), sorted(keys::FORMULA));
        assert_eq!(
            props(&v, &["properties", "sources", "additionalProperties"]),
            sorted(keys::SOURCE)
        );
        assert_eq!(
            props(&v, &["properties", "measures", "additionalProperties"]),
            sorted(keys::MEASURE)
        );
        assert_eq!(props(&v, &["properties", "score"]), sorted(keys::SCORE));
        assert_eq!(
            props(
                &v,
                &[
                    "properties",
                    "score",
                    "properties",
                    "components",
                    "additionalProperties"
                ]
            ),
            sorted(keys::COMPONENT)
        );
        assert_eq!(
            props(
                &v,
                &[
                    "properties",
                    "score",
                    "properties",
                    "components",
                    "additionalProperties",
                    "properties",
                    "alternatives"
                ]
            ),
            sorted(keys::COMPONENT_ALTERNATIVES)
        );
        assert_eq!(
            props(&v, &["properties", "score", "properties", "alternatives"]),
            sorted(keys::SCORE_ALTERNATIVES)
        );
        assert_eq!(
            props(
                &v,
                &[
                    "properties",
                    "sources",
                    "additionalProperties",
                    "properties",
                    "columns",
                    "additionalProperties"
                ]
            ),
            sorted(keys::COLUMN)
        );
        assert_eq!(props(&v, &["properties", "rollup"]), sorted(keys::ROLLUP));
        assert_eq!(
            props(
                &v,
                &[
                    "properties",
                    "dimensions",
                    "additionalProperties",
                    "oneOf",
                    "1"
                ]
            ),
            sorted(keys::DIMENSION)
        );
        assert_eq!(
            props(&v, &["properties", "operations"]),
            sorted(keys::OPERATIONS)
        );
        assert_eq!(
            props(&v, &["properties", "calendar"]),
            sorted(keys::CALENDAR)
        );
        assert_eq!(
            props(
                &v,
                &[
                    "properties",
                    "sources",
                    "additionalProperties",
                    "properties",
                    "freshness"
                ]
            ),
            sorted(keys::FRESHNESS)
        );
        assert_eq!(
            props(&v, &["properties", "tests", "items"]),
            sorted(keys::TEST)
        );
    }
}
