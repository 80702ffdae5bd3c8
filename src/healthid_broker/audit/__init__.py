"""The audit log's verifiable core: an RFC 9162 Merkle tree over the entries and signed
checkpoints of it in the C2SP tlog-checkpoint / signed-note formats (docs/audit.md).

Pure library code: no database, no web framework. Storage, the CLI and the served checkpoint
build on it.
"""
