using System.Diagnostics;

namespace ParetoQ.Runtime.Tests;

/// <summary>Runs one of the built programs (copied beside the tests) as a user would, with a time limit.</summary>
internal static class ProgramRunner
{
    public static (int Exit, string Out, string Err) Run(string program, string stdin,
        (string Name, string Value)[] environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true,
            RedirectStandardInput = true, UseShellExecute = false };
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, program + ".dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} did not finish in 120 s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
