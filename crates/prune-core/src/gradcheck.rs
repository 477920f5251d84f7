//! Finite-difference gradient checks.
