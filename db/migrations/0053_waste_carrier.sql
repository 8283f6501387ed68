-- Medical-waste carriers confirm receipt of waste batches over REST with their own API key.
ALTER TABLE api_clients DROP CONSTRAINT api_clients_role_check;
ALTER TABLE api_clients ADD CONSTRAINT api_clients_role_check CHECK (role IN ('logistics', 'lab', 'hospital', 'tracing', 'carrier'));
