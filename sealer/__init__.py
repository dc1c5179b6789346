"""The otel-audit sealer service, above `backend` and `otel_audit`. The map:

- `service` builds the parts and holds their start and stop order; `config` is its typed
  configuration;
- intake: `grpc_receiver`, `http_receiver` (with `http_body`), `auth` (producers),
  `intake` (what both receivers do with a request), `outcomes` (one outcome -> status table),
  `salvage` (what protobuf refuses as a whole), `refusals`;
- sealing: `workers` (processes that run `prepare`), `masking`, `seal` (pure: a record's place
  in the log), `stage` (one queue and thread), `pipeline` (group commit), `state`;
- durability: `checkpointer`, `recovery`, `journal`, `restore`, `losses`, `disk`;
- watching: `metrics`, `producer_gaps`, `read_api` (the read commands of a running sealer);
- `cli`, the `otel-audit` command line above it all.
"""
