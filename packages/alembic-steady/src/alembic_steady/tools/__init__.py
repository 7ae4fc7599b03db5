"""The chores behind `make backup`, `restore`, `psql`/`dbshell`, `db-up`/`db-down`/`db-reset`,
`rehearse` and `lint-migrations`: worded once here, run through the dialect's clients."""
