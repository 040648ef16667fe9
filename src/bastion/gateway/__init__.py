"""bastion.gateway"""
