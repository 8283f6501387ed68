"""Who may call what, written by hand from the README's "who" columns (not read from the code).

The policy tests compare the running app against this table: every REST route and
GraphQL root field must be listed here (a new one fails until someone writes down who
may call it), and each role must be admitted or refused (403 / "Not allowed") as written.
"""

from __future__ import annotations

PUBLIC = "public"  # no credential needed

CMD, MGR, STAFF, MEDIC = "command", "site_manager", "site_staff", "medic"
LOGI, LAB, HOSP = "logistics", "lab", "hospital"

PEOPLE = {CMD, MGR, STAFF, MEDIC}  # "staff roles"
ADMINS = {CMD, MGR}
FLOOR = {CMD, MGR, STAFF}

EXPECTED: dict[str, str | set[str]] = {
    # --- Sites: anyone among staff and logistics, limited to their sites; create: command; change: command, manager
    "GET /api/v1/sites": PEOPLE | {LOGI},
    "GET /api/v1/sites/{site_id}": PEOPLE | {LOGI},
    "POST /api/v1/sites": {CMD},
    "PATCH /api/v1/sites/{site_id}": ADMINS,
    "query sites": PEOPLE | {LOGI},
    "query site": PEOPLE | {LOGI},
    "mutation createSite": {CMD},
    "mutation updateSite": ADMINS,
    # --- Rooms, stays and occupancy
    "GET /api/v1/sites/{site_id}/rooms": PEOPLE,
    "GET /api/v1/rooms/{room_id}": PEOPLE,
    "query room": PEOPLE,
    "query rooms": PEOPLE,
    "mutation createFloor": ADMINS,
    "mutation updateRoom": ADMINS,
    "mutation turnOverRoom": PEOPLE,
    "query roomBoard": PEOPLE,
    "GET /api/v1/occupancy": PEOPLE | {LOGI},
    "GET /api/v1/sites/{site_id}/occupancy": PEOPLE | {LOGI},
    "query occupancy": PEOPLE | {LOGI},
    "mutation admitResident": FLOOR,
    "mutation admitBatch": FLOOR,
    "query suggestRooms": FLOOR,
    "mutation moveStay": FLOOR,
    "mutation releaseStay": PEOPLE,
    "mutation extendStay": PEOPLE,
    "query stay": PEOPLE,
    "query stays": PEOPLE,
    "query stayContacts": PEOPLE,
    "query regimes": PEOPLE,
    "mutation updateRegime": {CMD},
    "query residentsByDocument": PEOPLE,
    "mutation revealResident": {CMD, MEDIC, MGR},
    # --- Health
    "POST /api/v1/checkins": PEOPLE,
    "POST /api/v1/checkins/batch": PEOPLE,
    "mutation recordCheckin": PEOPLE,
    "mutation recordCheckins": PEOPLE,
    "mutation recordSamples": PEOPLE,
    "mutation recordPool": PEOPLE,
    "POST /api/v1/lab/results": {LAB},
    "GET /api/v1/sites/{site_id}/alerts": PEOPLE,
    "GET /api/v1/alerts/{alert_id}": PEOPLE,
    "query siteAlerts": PEOPLE,
    "POST /api/v1/alerts/{alert_id}/acknowledge": PEOPLE,
    "mutation acknowledgeAlert": PEOPLE,
    "POST /api/v1/alerts/{alert_id}/resolve": {MEDIC},
    "mutation resolveAlert": {MEDIC},
    "query checkinsDue": PEOPLE,
    "query swabsDue": PEOPLE,
    "query healthTimeline": PEOPLE,
    "GET /api/v1/sites/{site_id}/exposure-reviews": PEOPLE,
    "query exposureReviews": PEOPLE,
    "POST /api/v1/exposure-reviews/{review_id}/decision": {CMD, MGR, MEDIC},
    "mutation decideExposureReview": {CMD, MGR, MEDIC},
    # --- Transfers
    "GET /api/v1/facilities": PEOPLE | {HOSP},
    "GET /api/v1/facilities/{facility_id}": PEOPLE | {HOSP},
    "query destinationFacilities": PEOPLE | {HOSP},
    "POST /api/v1/facilities": {CMD},
    "PATCH /api/v1/facilities/{facility_id}": {CMD},
    "mutation createDestinationFacility": {CMD},
    "mutation updateDestinationFacility": {CMD},
    "POST /api/v1/transfers": PEOPLE,
    "mutation requestTransfer": PEOPLE,
    "POST /api/v1/transfers/{transfer_id}/transitions": {MEDIC, CMD},
    "mutation moveTransfer": {MEDIC, CMD},
    "GET /api/v1/transfers/{transfer_id}": PEOPLE,
    "GET /api/v1/transfers/{transfer_id}/transitions": PEOPLE,
    "query transfer": PEOPLE,
    "GET /api/v1/sites/{site_id}/transfers": PEOPLE,
    "query siteTransfers": PEOPLE,
    "query transferBoard": PEOPLE,
    "query residentTransfers": PEOPLE,
    "GET /api/v1/sites/{site_id}/transfer-times": PEOPLE,
    "query transferTimes": PEOPLE,
    "GET /api/v1/hospital/transfers": {HOSP},
    "GET /api/v1/hospital/transfers/{transfer_id}": {HOSP},
    "POST /api/v1/hospital/transfers/{transfer_id}/arrival": {HOSP},
    "POST /api/v1/hospital/transfers/{transfer_id}/refusal": {HOSP},
    "POST /api/v1/hospital/transfers/{transfer_id}/acceptance": {HOSP},
    "POST /api/v1/hospital/transfers/{transfer_id}/decline": {HOSP},
    "POST /api/v1/hospital/transfers/{transfer_id}/outcome": {HOSP},
    # --- Access
    "POST /api/v1/auth/login": PUBLIC,
    "POST /api/v1/auth/refresh": PUBLIC,
    "POST /api/v1/auth/logout": PUBLIC,
    "mutation login": PUBLIC,
    "mutation refreshToken": PUBLIC,
    "mutation logout": PUBLIC,
    "query apiVersion": PUBLIC,
    "query me": PEOPLE,
    "GET /api/v1/staff": ADMINS,
    "GET /api/v1/staff/{staff_id}": ADMINS,
    "query staffMembers": ADMINS,
    "query staffMember": ADMINS,
    "POST /api/v1/staff": ADMINS,
    "PATCH /api/v1/staff/{staff_id}": ADMINS,
    "mutation createStaff": ADMINS,
    "mutation updateStaff": ADMINS,
    "GET /api/v1/clients": ADMINS,
    "POST /api/v1/clients": ADMINS,
    "POST /api/v1/clients/{client_id}/revoke": ADMINS,
    "query apiClients": ADMINS,
    "mutation createApiClient": ADMINS,
    "mutation revokeApiClient": ADMINS,
    "GET /api/v1/audit": {CMD},
    "query auditLog": {CMD},
    # --- Supplies
    "GET /api/v1/supplies/items": PEOPLE | {LOGI},
    "query supplyItems": PEOPLE | {LOGI},
    "POST /api/v1/supplies/items": {CMD},
    "POST /api/v1/supplies/movements": FLOOR,
    "mutation recordStockMovement": FLOOR,
    "POST /api/v1/supplies/transfers": FLOOR,
    "mutation transferStock": FLOOR,
    "GET /api/v1/supplies/sites/{site_id}/movements": PEOPLE | {LOGI},
    "PATCH /api/v1/supplies/sites/{site_id}/stock/{item_id}": ADMINS,
    "GET /api/v1/supplies/stock": PEOPLE | {LOGI},
    "query siteStock": PEOPLE | {LOGI},
    "GET /api/v1/supplies/changes": PEOPLE | {LOGI},
    "GET /api/v1/supplies/replenishments": PEOPLE | {LOGI},
    "GET /api/v1/supplies/replenishments/{rep_id}": PEOPLE | {LOGI},
    "query replenishments": PEOPLE | {LOGI},
    "query replenishment": PEOPLE | {LOGI},
    "POST /api/v1/supplies/replenishments": FLOOR,
    "mutation raiseReplenishment": FLOOR,
    "POST /api/v1/supplies/replenishments/{rep_id}/acknowledge": {LOGI, CMD},
    "POST /api/v1/supplies/replenishments/{rep_id}/dispatch": {LOGI, CMD},
    "POST /api/v1/supplies/replenishments/{rep_id}/receive": FLOOR,
    "mutation receiveReplenishment": FLOOR,
    "POST /api/v1/supplies/replenishments/{rep_id}/cancel": FLOOR | {LOGI},
    "GET /api/v1/supplies/webhooks": {LOGI, CMD},
    "POST /api/v1/supplies/webhooks": {LOGI, CMD},
    "DELETE /api/v1/supplies/webhooks/{webhook_id}": {LOGI, CMD},
    "GET /api/v1/supplies/webhooks/{webhook_id}/deliveries": {LOGI, CMD},
    # --- Live updates: staff apps only
    "subscription siteEvents": PEOPLE,
    # --- Offline replay: staff roles; each queued write also needs its own mutation's roles
    "mutation syncWrites": PEOPLE,
    # --- Changes by cursor: staff apps and logistics (each sees only the event types it may read)
    "GET /api/v1/changes": PEOPLE | {LOGI},
    "query changes": PEOPLE | {LOGI},
}

# The command dashboard's pages (/command): a browser session cookie, never a bearer token;
# walked by tests/command/test_policy.py. Public: the login form, login and logout themselves.
PAGES: dict[str, str | set[str]] = {
    "GET /command": {CMD},
    "GET /command/panels": {CMD},
    "GET /command/login": PUBLIC,
    "POST /command/login": PUBLIC,
    "POST /command/logout": PUBLIC,
}
