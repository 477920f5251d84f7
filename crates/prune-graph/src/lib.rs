//! `prune-graph`: the model IR — a DAG of named layer nodes plus a parameter
//! store — with shape inference, FLOPs/parameter counting, an interpreter on
//! prune-core's autograd tape, the model zoo, and (de)serialization as
//! `model.json` + `weights.safetensors`.

mod bn_node;
pub mod error;
mod fuse;
pub mod interp;
pub mod io;
pub mod ir;
pub mod model;
pub mod params;
pub mod regularizer;
mod release;
pub mod shapes;
pub mod zoo;

pub use error::{GraphError, Result};
pub use interp::{forward, predict, ChannelMasks, Mode, RunOptions};
pub use ir::{Graph, Layer, Node};
pub use model::Model;
pub use params::{ParamKind, ParamStore};
pub use regularizer::Regularizer;
pub use shapes::{cost, infer_shapes, Cost, LayerCost};
