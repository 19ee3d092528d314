"""
Plugins for the gateway: modules here (and in any C{gateway/plugins/}
folder elsewhere on the Python path, with no C{__init__.py} of its own)
provide L{gateway.verifiers.interfaces.IDomainVerifierFactory} and are
found with L{twisted.plugin.getPlugins}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__ = []
