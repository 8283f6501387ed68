from service.stays import service as stays
from tests.stays.helpers import COMMAND, admission, make_site


async def test_admit_and_release_smoke(db, settings):
    site_id = await make_site(db, floors={3: (5, 1)})
    async with db.transaction() as conn:
        stay = await stays.admit(conn, COMMAND, settings, admission(site_id))
    assert stay.room_number == "301" and stay.bed == 1
