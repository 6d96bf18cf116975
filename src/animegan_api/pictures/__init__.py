"""Pictures: pure functions on images.

Decoding and validating uploads, fitting and encoding (:mod:`.imaging`),
captioned contact sheets (:mod:`.sheets`), finding faces (:mod:`.faces`) and
framing them in level squares (:mod:`.framing`). The lowest layer above
:mod:`animegan_api.failures`: it imports no other part of the service.
"""
