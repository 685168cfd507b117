"""Database access: schema, engine, migrations, and the store the pipeline uses."""
