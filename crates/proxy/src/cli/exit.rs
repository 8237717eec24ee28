//! Exit codes: 0 success; 1 a failure at run time (a port already taken);
//! 2 bad input (configuration, certificates, keys).

/// Exit code for bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for failures at run time.
pub const EXIT_RUNTIME: u8 = 1;
