//! CPU reference implementations of every kernel, used by the tests to check the device
//! results and usable on machines without a GPU.

pub mod conv;
pub mod gather;
pub mod philox;
pub mod sbp;
pub mod sbp_closed;
pub mod special;
pub mod truncated;
