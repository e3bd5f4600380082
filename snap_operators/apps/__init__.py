"""The ``snap-pc`` commands: graph running (:mod:`.cli`), the command registry (:mod:`.commands`), demo, assess, quicklook, timeseries, synthetic scenes."""
