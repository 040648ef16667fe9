"""bastion.redteam: attack a target with seeds x techniques (and attacker-LLM attacks), judge, store, score.

Contracts live in `base`; the attack library in `seeds`, `techniques`, `attacks`; the campaign machinery in
`targets`, `judges`, `runner`, `stats`. Submodules are imported on use (this package import stays light).
"""
