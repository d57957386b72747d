"""The wires of the systems ipfi replaces, beside its own (ipcprims' frames, in ``ipfi.core``):
IPFI's (Rust) messages and libIPC's (C) frames. Sans-I/O, as the core: pure encoders and
incremental decoders that take bytes in any chunking, bounded against hostile peers.
(The drivers speak them through ``protocol=`` and ``libipc:`` addresses in a later step.)"""
