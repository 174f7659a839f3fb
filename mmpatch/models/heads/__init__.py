# Components register themselves on import; list each module here.
