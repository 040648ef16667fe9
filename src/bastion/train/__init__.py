"""bastion.train"""
