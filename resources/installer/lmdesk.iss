; Inno Setup script: a per-user Windows installer for lmdesk (no admin rights).
; Built by .github/workflows/build.yml:  iscc /DAppVersion=X.Y.Z resources\installer\lmdesk.iss
; from the PyInstaller folder dist\lmdesk (build.spec).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif

[Setup]
AppId={{6B1C8E6A-3C59-4D7B-9C1E-2F1A9A6D1E42}
AppName=lmdesk
AppVersion={#AppVersion}
AppPublisher=lmdesk
DefaultDirName={localappdata}\Programs\lmdesk
DefaultGroupName=lmdesk
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
OutputDir=..\..\dist\installer
OutputBaseFilename=lmdesk-{#AppVersion}-windows-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ArchitecturesInstallIn64BitMode=x64compatible
UninstallDisplayIcon={app}\lmdesk.exe

[Files]
Source: "..\..\dist\lmdesk\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{userprograms}\lmdesk"; Filename: "{app}\lmdesk.exe"
Name: "{userdesktop}\lmdesk"; Filename: "{app}\lmdesk.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop shortcut"; Flags: unchecked

[Run]
Filename: "{app}\lmdesk.exe"; Description: "Start lmdesk"; Flags: nowait postinstall skipifsilent
