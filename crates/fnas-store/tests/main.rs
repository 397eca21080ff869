//! Integration tests of the stores and the knowledge pool, built as one test binary (one link instead of one per file).

mod conformance;
mod crash;
mod fuzz;
mod migration;
mod pg_pool;
mod pool;
mod postgres;
mod search_loop;
mod sqlite;
