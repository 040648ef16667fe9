"""bastion.report"""
