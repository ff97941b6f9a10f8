//! The host's local image store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`) that skopeo and umoci can read.
