"""The otel-audit sealer service, above `backend` and `otel_audit`. The map:

- `service` builds the parts and holds their start and stop order; `config` is its typed
  configuration;
- intake: `grpc_receiver`, `http_receiver` (with `http_body`), `auth` (producers),
  `intake` (what both receivers do with a request), `outcomes` (one outcome -> status table),
  `salvage` (what protobuf refuses as a whole), `refusals`;
- sealing: `workers` (processes that run `prepare`), `masking`, `seal` (pure: a record's place
  in the log), `stage` (one queue and thread), `groups` (batches and groups), `group_commit` (the writer),
  `journaling` (the journaler), `publisher` (read-back and publishing), `pipeline` (the assembly
  of these), `state`;
- durability: `checkpointer`, `recovery`, `journal`, `restore`, `losses`, `disk`;
- trust: `signing` (a key file or an HSM key), `pkcs11_key` (PKCS#11 keys), `timestamper`
  (RFC 3161 tokens), `witness_client` (cosignatures from witnesses), `witness_server`
  (`otel-audit witness serve`);
- watching: `metrics`, `producer_gaps`, `read_api` (the read commands of a running sealer);
- `cli`, the `otel-audit` command line above it all.
"""
