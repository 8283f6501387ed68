"""Sites (the unit of access), rooms and room turnover."""
