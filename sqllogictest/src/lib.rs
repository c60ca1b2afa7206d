//! Runners for the `.slt` suites: in-process against the query layer and
//! over the Postgres wire against a started server.
