"""fc-verify: the offline verifier of Federation Core evidence packs (`fc-verify PACK.json`,
or `python -m fc_verify.verify_pack PACK.json`). Built from audit/ of Federation Core."""
