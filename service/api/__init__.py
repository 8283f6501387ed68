"""Assembly only: the REST route list, the Strawberry schema, the background jobs."""
