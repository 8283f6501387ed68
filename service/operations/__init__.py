"""Site operations (issue 17): the domains a site runs beside admissions and health, one sub-package
each with the usual modules (model, store, service, gql, demo).

- ``care``: residents' vulnerability flags and their service requests (meal, medicine, ...)
- ``staffing``: staff rosters, the staff closed loop (tests, check-ins, status, exposure)
- ``infection``: inspections and findings, environmental swabs, the medical-waste log
"""
