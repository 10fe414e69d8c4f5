"""NRF retail calendar (4-5-4), computed independently of croo.

The year ends on the Saturday nearest 31 January and is named after the
calendar year it starts in. Writes nrf.json: every fiscal year 2000-2034
with its first and last day and weeks, the 53-week years, and the first
day of each 4-5-4 month (the 53rd week in the last month).
Run: python3 nrf.py > nrf.json
"""
import datetime as dt
import json


def year_end(y):
    """The Saturday nearest 31 January of calendar year y."""
    jan31 = dt.date(y, 1, 31)
    # Candidates within three days either side; exactly one is a Saturday.
    for k in range(-3, 4):
        d = jan31 + dt.timedelta(days=k)
        if d.weekday() == 5:
            return d
    raise AssertionError


years = []
for fy in range(2000, 2035):
    first = year_end(fy) + dt.timedelta(days=1)
    last = year_end(fy + 1)
    weeks = ((last - first).days + 1) // 7
    months, w = [], 0
    for i in range(12):
        months.append(str(first + dt.timedelta(weeks=w)))
        w += [4, 5, 4][i % 3]
    years.append({"year": fy, "first": str(first), "last": str(last), "weeks": weeks, "months": months})
print(json.dumps({"years": years, "years_53": [y["year"] for y in years if y["weeks"] == 53]}, indent=1))
