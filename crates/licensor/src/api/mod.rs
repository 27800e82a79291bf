//! The HTTP surfaces. Each speaks its own wire format over the same core model.

pub mod astra;
pub mod keygen;
pub mod licensing;
pub mod opswat;
