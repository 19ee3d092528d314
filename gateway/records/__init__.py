"""
The authentication records store: one record per server-to-server stream
whose peer was checked, saying who it was, how it was authenticated (or why
it was refused) and on what evidence.

  - L{gateway.records.record.AuthenticationRecord}: the record, a frozen
    value object with a JSON form;
  - L{gateway.records.interfaces.IRecordStore}: where records are kept;
  - L{gateway.records.sqlite.SQLiteRecordStore}: the gateway's store, a
    SQLite file in the state folder, used from a thread so the reactor
    never waits on the disk;
  - L{gateway.records.memory.MemoryRecordStore}: an in-memory store for
    tests, the gateway's and plugin authors'.
"""
