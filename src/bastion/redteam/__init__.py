"""bastion.redteam"""
