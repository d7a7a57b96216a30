"""AdventureWorks: every table of a SQL schema copied to bronze, conformed in silver, snake_case in gold."""
