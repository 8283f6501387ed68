import uuid

from service.access.model import Role
from tests.conftest import make_principal
from tests.supplies.helpers import make_item, make_site, staff

MOVE = """mutation($input: RecordStockMovementInput!) { recordStockMovement(input: $input) {
    movement { id delta quantityAfter item { sku } } userErrors { field code message } } }"""
STOCK = """query($site: UUID!) { siteStock(siteId: $site) { siteId items { sku quantity daysOfCover low } lowItems { sku } } }"""
RAISE = """mutation($input: RaiseReplenishmentInput!) { raiseReplenishment(input: $input) {
    replenishment { id state version lines { requested item { sku } } } userErrors { code } } }"""
RECEIVE = """mutation($input: ReceiveReplenishmentInput!) { receiveReplenishment(input: $input) {
    replenishment { state lines { received short } } userErrors { code } } }"""


async def gql(client, headers, query, **variables):
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def test_stock_movements_and_replenishment_over_graphql(client, auth):
    site = await make_site(client, auth)
    item = await make_item(client, auth, sku="PPE-N95", usage_rate=2)
    worker = staff([site])
    headers = auth(worker)
    movement = {"id": str(uuid.uuid4()), "siteId": site, "itemId": item, "kind": "receipt", "quantity": 10}
    done = (await gql(client, headers, MOVE, input=movement))["recordStockMovement"]
    assert done["movement"]["quantityAfter"] == 10 and done["movement"]["item"]["sku"] == "PPE-N95"
    again = (await gql(client, headers, MOVE, input=movement))["recordStockMovement"]
    assert again["movement"]["id"] == movement["id"]
    short = (await gql(client, headers, MOVE, input={**movement, "id": str(uuid.uuid4()), "kind": "issue", "quantity": 11}))
    assert short["recordStockMovement"]["userErrors"][0]["code"] == "insufficient_stock"
    stock = (await gql(client, headers, STOCK, site=site))["siteStock"]
    # fixed 2 per day: 10 on hand lasts 5 days
    assert stock["items"] == [{"sku": "PPE-N95", "quantity": 10, "daysOfCover": 5.0, "low": False}]
    hidden = await gql(client, auth(staff([str(uuid.uuid4())])), STOCK, site=site)
    assert hidden["siteStock"] is None

    raised = (await gql(client, headers, RAISE, input={"siteId": site, "lines": [{"itemId": item, "quantity": 5}]}))["raiseReplenishment"]
    rep = raised["replenishment"]
    assert rep["state"] == "OPEN" and rep["lines"][0]["item"]["sku"] == "PPE-N95"
    logistics = make_principal(Role.LOGISTICS, [uuid.UUID(site)])
    url = f"/api/v1/supplies/replenishments/{rep['id']}"
    await client.post(f"{url}/dispatch", json={"version": 1, "shipment_ref": "EMS-1"}, headers=auth(logistics))
    received = (await gql(client, headers, RECEIVE, input={"id": rep["id"], "version": 2, "lines": [{"itemId": item, "quantity": 4}]}))
    assert received["receiveReplenishment"]["replenishment"] == {"state": "RECEIVED", "lines": [{"received": 4, "short": 1}]}
    stock = (await gql(client, headers, STOCK, site=site))["siteStock"]
    assert stock["items"][0]["quantity"] == 14
