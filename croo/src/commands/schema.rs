//! `croo schema`: the JSON Schema of formula files, for TOML editors.

use crate::exit::Failure;

pub fn run() -> Result<u8, Failure> {
    println!("{}", formulas::schema::JSON.trim_end());
    Ok(0)
}
