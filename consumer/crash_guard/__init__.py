"""The crash guard: how many workers started a record and died before answering it (`counts`, pure), written
before each record's work and withdrawn once it is answered (`ledger`); a record that killed too many workers is
answered `worker_crashed` instead of being started again."""
