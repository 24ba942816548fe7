//! Throwaway local Postgres for `dev` and tests (being written).
