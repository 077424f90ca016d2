//! Storage backends of the native server, each an implementation of the
//! core's storage port.

pub mod fs;
