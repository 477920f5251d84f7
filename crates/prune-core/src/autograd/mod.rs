//! Reverse-mode automatic differentiation.
pub struct Tape;
pub struct Var;
pub struct Op;
pub struct Gradients;
