"""Importers for dataset layouts beyond single structure files.

* :mod:`~farfield.data.importers.qmof`: a folder of CIFs + a table of energies and
  per-atom charges (QMOF-style, energies only);
* :mod:`~farfield.data.importers.odac`: ASE SQLite databases whose rows name their
  structure and parent MOF (ODAC-style);
* :mod:`~farfield.data.importers.table`: the CSV/JSON table reader they share.

Each returns :class:`~farfield.data.readers.ReadResult` objects of validated records;
:mod:`farfield.data.importing` turns them into reports and a store.
"""
