using ParetoQ.KernelCheck;
using ParetoQ.Runtime.Kernels;

// Runs the kernel suite and the attention suite on every path this CPU supports (the Scalar reference against itself is
// skipped), then the dense float suite and the per-token activation work on the portable vectors, and prints "N passed, N failed". Exit code 1 on any
// failure. Used under qemu for the NEON path.
var paths = KernelDispatch.Supported.Where(p => p != KernelPath.Scalar).ToArray();
Console.WriteLine($"kernel paths: {string.Join(", ", paths.Select(KernelDispatch.Name))} (widest " +
    $"{KernelDispatch.Name(KernelDispatch.Widest)}, fastest {KernelDispatch.Name(KernelDispatch.Best)})");
int passed = 0, failed = 0;
var cases = KernelSuite.Cases(paths).Select(c => (Name: c.ToString(), Run: (Func<string?>)(() => KernelSuite.Run(c))))
    .Concat(AttentionSuite.Cases(paths).Select(c
        => (Name: c.ToString(), Run: (Func<string?>)(() => AttentionSuite.Run(c)))))
    .Concat(FloatSuite.Cases())
    .Concat(ActivationSuite.Cases());
foreach (var c in cases)
{
    string? problem;
    try { problem = c.Run(); }
    catch (Exception e) { problem = e.GetType().Name + ": " + e.Message; }
    if (problem is null) passed++;
    else
    {
        failed++;
        if (failed <= 20) Console.WriteLine($"FAIL {c.Name}: {problem}");
    }
}
Console.WriteLine($"{passed} passed, {failed} failed");
return failed == 0 && passed > 0 ? 0 : 1;
