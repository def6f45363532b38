//! Tenancy: the tenant root key, node certificates, revocations and the per-tenant
//! credentials a node holds.
//!
//! A tenant is the isolation boundary. Its root key (ed25519) certifies each member node's
//! per-tenant signing key with roles and a validity window; revocations signed by the root
//! form a grow-only set. A node's key in one tenant is unrelated to its key in another and
//! to its network identity, so its tenants cannot be linked by key.

mod cert;
mod credentials;

pub use cert::{
    CertError, NodeCert, Revocation, Revocations, Roles, SignedCert, SignedRevocation, TenantId, TenantRoot,
};
pub use credentials::{CredentialsError, MAX_EPOCHS, TenantCredentials, TenantSecrets};
