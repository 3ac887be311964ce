"""`monitor evaluate`: labelled corpora (`corpus`), each file trained and replayed through the engine
(`replay`), NAB's scoring rules (`nab`) and tables (`report`), plots (`plots`), and the corpus run that ties
them together (`evaluate`)."""
