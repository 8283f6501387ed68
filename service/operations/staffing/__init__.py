"""The staff closed loop: rosters, staff tests, check-ins and swabs, closed-loop status, exposure reviews."""
