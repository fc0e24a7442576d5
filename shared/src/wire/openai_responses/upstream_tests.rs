//! Golden translations of the Responses upstream codec.
