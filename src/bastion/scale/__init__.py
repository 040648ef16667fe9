"""bastion.scale"""
