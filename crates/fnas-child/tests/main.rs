//! Integration tests of fnas-child, built as one test binary (one link of burn instead of
//! one per file). `net.rs` stays a binary of its own: it measures process-wide state (the
//! global rayon pool's threads stay idle while a latency is measured, parameter
//! initialisation from burn's one random generator) that tests running beside it in the
//! same process would disturb.

mod data;
mod image_folder;
mod kernels;
mod train;
mod transfer;
mod warm;
