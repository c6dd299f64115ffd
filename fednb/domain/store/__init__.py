"""The one persistence layer: every table, query and transaction of a domain."""
