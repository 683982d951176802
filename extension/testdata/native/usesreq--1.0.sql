CREATE VIEW @extschema@.usesreq_v AS SELECT v FROM @extschema:multi@.multi_t;
ALTER VIEW @extschema@.usesreq_v OWNER TO @extowner@;
