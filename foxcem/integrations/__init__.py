"""Other libraries' ways of working: PyTorch Lightning (:mod:`foxcem.integrations.lightning`)
and Quantus (:mod:`foxcem.integrations.quantus`). Each is imported only when used."""
