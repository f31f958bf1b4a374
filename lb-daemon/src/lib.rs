//! `lb` control plane: configuration, the Maglev ring builder, the kernel data
//! plane handle, and (in later modules) the gRPC API.

pub mod dataplane;
pub mod maglev;
