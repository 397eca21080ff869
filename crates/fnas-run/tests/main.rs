//! Integration tests of fnas-run, built as one test binary (one link instead of one per file).

mod prepare;
mod settings;
