"""`dpt_lifecycle_node`: the same node as a managed (lifecycle) node.

Transitions (drive them with `ros2 lifecycle set /dpt_node <transition>` or a lifecycle manager):
  configure   validate parameters, load and test-run the model, publish the class table
              (a failure is reported with its reason and leaves the node unconfigured)
  activate    create the camera subscriptions and output publishers, start inference, diagnostics
  deactivate  stop inference, remove the camera topics (the model stays loaded)
  cleanup     release the model
  shutdown    from any state: as deactivate + cleanup
Parameters, topics and outputs are those of `dpt_node` (docs/node.md). Every parameter is declared
at construction, so `ros2 param set` works before `configure`; the ones read at configure (weights,
device, topics, ...) can be changed only while unconfigured (after `cleanup`), the runtime ones
at any time.
"""

from __future__ import annotations

# `python -m`: Ctrl-C while torch and rclpy import exits quietly, as with bin/dpt_lifecycle_node
# (main restores Python's handler before rclpy.init).
if __name__ == "__main__":
    from dpt_perception.command_line import exit_quietly_on_interrupt

    exit_quietly_on_interrupt()

import sys
import traceback

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from dpt_perception.ros.node import DptPerception, StartupError, run_executable
from dpt_perception.ros.parameters import (
    RUNTIME_PARAMETERS,
    declare_only,
    validate_value,
)


class DptLifecycleNode(LifecycleNode):
    """`DptPerception` driven by managed transitions."""

    def __init__(self, node_name: str = "dpt_node", **kwargs):
        super().__init__(node_name, **kwargs)
        self.perception = DptPerception(self)
        self._configured = False
        try:
            declare_only(self, read_only=False)
        except ValueError:  # an override outside its range: configure declares the rest and says why
            pass
        self.add_on_set_parameters_callback(self._guard_parameters)

    def _guard_parameters(self, params) -> SetParametersResult:
        """Start-up parameters change only while unconfigured; values are checked as at configure
        (runtime parameters of a configured node are checked by DptPerception's own callback)."""
        for param in params:
            if param.name in RUNTIME_PARAMETERS and self._configured:
                continue
            if param.name not in RUNTIME_PARAMETERS and self._configured:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read at configure: change it while the node is unconfigured "
                    "(cleanup first)"))
            reason = validate_value(param.name, param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.perception.configure()
        except Exception as exc:  # reported with its reason; the node stays unconfigured
            self.get_logger().error(f"configure failed: {_reason(exc)}")
            self.perception.cleanup()
            return TransitionCallbackReturn.FAILURE
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.perception.activate()
        except Exception as exc:  # the node stays inactive, model loaded
            self.get_logger().error(f"activate failed: {_reason(exc)}")
            self.perception.deactivate()
            return TransitionCallbackReturn.FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.cleanup()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.perception.cleanup()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while in state {state.label}: releasing everything")
        self.perception.cleanup()
        self._configured = False
        return TransitionCallbackReturn.SUCCESS


    def shutdown(self) -> None:
        self.perception.cleanup()


def _reason(exc: Exception) -> str:
    """StartupError messages are written for users; anything else also gets its traceback."""
    if isinstance(exc, StartupError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n" + "".join(traceback.format_exception(exc))


def main(argv=None) -> int:
    return run_executable(DptLifecycleNode, "dpt_lifecycle_node", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
