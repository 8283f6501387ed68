async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "status": "ok", "postgres": True, "redis": True}


async def test_graphql_answers(client):
    response = await client.post("/graphql", json={"query": "{ apiVersion }"})
    assert response.json() == {"data": {"apiVersion": "1"}}
