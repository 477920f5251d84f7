//! CPU reference implementations of every kernel, used by the tests to check the device
//! results and usable on machines without a GPU.

pub mod batchnorm;
pub mod channels;
pub mod conv;
pub mod elementwise;
pub mod gather;
pub mod optim;
pub mod philox;
pub mod pooling;
pub mod reduce;
pub mod sbp;
pub mod sbp_closed;
pub mod special;
pub mod truncated;
